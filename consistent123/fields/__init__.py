"""3D representations: hash-grid NeRF and DMTet, each behind a backend seam."""
