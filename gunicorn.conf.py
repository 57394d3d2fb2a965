"""gunicorn reads this file from the folder it starts in (``make run``, the test
servers): the access log leaves out password-reset tokens (see portal/access_log.py)."""

logger_class = "portal.access_log.RedactingLogger"
