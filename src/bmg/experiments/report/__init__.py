"""The report layer every system shares: statistics over seeds, intervals over games, tables."""
