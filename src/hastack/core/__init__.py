"""What every hastack service shares: buffers, serving, lifecycle, logging, stats, supervision."""
