"""cocotb testbenches and the verification library they share."""
