"""Time-series forecasting: one or many series on a declared frequency, forecast `horizon` points ahead."""
