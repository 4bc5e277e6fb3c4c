"""The bottom layer's process and thread helpers (stdlib only), used by video/, flow/ and run/
alike: children that die with their parent, SIGTERM as an interrupt, stale shared memory,
read-ahead threads, CPU affinity."""
