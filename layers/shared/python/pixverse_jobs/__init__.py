"""pixverse_jobs: the shared code of the pixverse-jobs functions (the Lambda layer's package).

Imports point one way: function handlers -> logic (``jobs``, ``callbacks``, ``delivery``) ->
adapters (``store``, ``gateway``, ``queue``, ``events``, ``media``, ``secrets``).
"""
