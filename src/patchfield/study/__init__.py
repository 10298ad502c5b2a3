"""The paper's claims measured at small scale: the table study (:mod:`.reproduce`, :mod:`.report`).

The analysis claims (Sec. 4.2, 4.3) are measured by :mod:`patchfield.claims`, which the study calls.
"""
