"""auditproxy: audit and monitor rather than deny.

A mitmproxy add-on that classifies every request against the department's
electronic-network policy, logs metadata as ECS JSON, exports Prometheus metrics and
shows a daily in-page notice on monitored sites.
"""

__version__ = "0.1.0"
