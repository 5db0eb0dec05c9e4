"""The ``tusk`` command line: talks to the services through the client SDK.

Commands that run services (``tusk up``) are added by the composition root, ``tusk_stack``.
"""
