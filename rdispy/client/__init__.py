"""The client: Executor (concurrent.futures) and, built on the same dispatcher, the dispy API."""
