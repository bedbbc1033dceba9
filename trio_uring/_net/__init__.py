"""io_uring sockets, streams, listeners and servers for trio."""
