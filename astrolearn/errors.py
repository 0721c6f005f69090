"""User-facing errors: reported as one line by the CLI, without a traceback."""


class UserError(Exception):
    """An error caused by the user's input (file, option, configuration).

    The CLI prints ``astrolearn: error: <message>`` and exits with status 2.
    """
