"""Spreadsheets in and out: reading CSV/XLSX, matching columns, planning and applying an import."""
