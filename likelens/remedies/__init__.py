"""What repairs the damage the like market does, built on a scan's outputs: ranking by
authentic engagement (``rank``), quality certificates (``certify``), creator credits
(``credits``) and the brand audit report (``audit``). Criteria and formulas: docs/remedies.md.
"""
