"""Fault injection: kills, concurrent writers, read-only and full disks, bad inputs."""
