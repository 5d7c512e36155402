"""Figures (matplotlib, Agg backend) and reports. Imports nothing from db or cli."""
