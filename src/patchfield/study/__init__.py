"""The paper's claims measured at small scale from a pretrained start: ``patchfield reproduce``.

:mod:`.reproduce` runs the study (configuration, budget, resumable runs), :mod:`.rows` says what is trained
and what cannot run here, :mod:`.curve` trains with a validation curve, :mod:`.stats` pairs rows by seed
(statistics of :mod:`patchfield.verdicts`), :mod:`.report` writes ``docs/reproduction.md``/``.json`` and the
curves. The analysis claims (Sec. 4.2, 4.3) are measured by :mod:`patchfield.claims`, which the study calls.
"""
