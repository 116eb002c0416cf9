"""Delivery reports for marketers, read only from the event log (or its daily rollups).

``rollup`` turns each UTC day's files into small tables kept beside the log; ``aggregate``
sums them into report rows and per-day series (its docstring is the API); ``output`` prints
them for the ``adserve report`` command.
"""

GROUPINGS = ("campaign", "creative", "variant", "placement", "day", "strategy")  # what a report's rows are per
