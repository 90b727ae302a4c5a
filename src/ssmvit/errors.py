"""The one exception type that reaches users as a single line."""


class UserError(Exception):
    """A problem the user can fix: bad config, bad data file, unknown name.

    The message is one line that names the problem and the fix. Scripts print
    it as ``error: <message>`` and exit with status 2, without a traceback.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
