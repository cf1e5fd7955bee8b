// LikeLens console: draws the figures a page carries as JSON data, and the review shortcuts.
// Loaded as a file (the Content-Security-Policy allows no inline script).
"use strict";

function drawFigures() {
  if (typeof Plotly === "undefined") return;
  document.querySelectorAll("[data-figure]").forEach((el) => {
    const data = document.getElementById(el.dataset.figure);
    if (!data) return;
    const fig = JSON.parse(data.textContent);
    Plotly.newPlot(el, fig.data, fig.layout, { responsive: true, displaylogo: false });
  });
}

function reviewShortcuts() {
  const form = document.getElementById("verdict-form");
  if (!form) return;
  const pick = { b: "bought", o: "organic", u: "unsure" };
  document.addEventListener("keydown", (ev) => {
    const typing = ev.target instanceof HTMLTextAreaElement ||
      (ev.target instanceof HTMLInputElement && ev.target.type !== "radio");
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (pick[ev.key]) {
      form.querySelector(`input[value="${pick[ev.key]}"]`).checked = true;
      document.getElementById("submit-verdict").focus();
      ev.preventDefault();
    } else if (ev.key === "n") {
      document.getElementById("note").focus();
      ev.preventDefault();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => { drawFigures(); reviewShortcuts(); });
