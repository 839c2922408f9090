"""A reconstruction from case folder to finished run folder: lifecycle, views, mesh and turntable."""
