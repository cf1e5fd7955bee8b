"""The analyst console at ``/console``: server-rendered pages over the service's database.

``users`` signs people in (argon2, lockout, server-side sessions with CSRF tokens), ``cases``
is the review queue (claims that never collide, verdicts on the evidence ledger, estimates
from the audit sample), ``pages`` gathers what each page shows and ``routes`` serves them.
"""
