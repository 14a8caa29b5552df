"""Pure logic: no processes, no network; imports only dcforge.core."""
