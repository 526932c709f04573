"""Small helpers the library shares: numeric checks, progress reporting, quieting noisy imports."""
