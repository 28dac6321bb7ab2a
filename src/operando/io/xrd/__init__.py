"""Diffraction: detector frame stacks, single images, geometry, 1D patterns, confocal scans."""
