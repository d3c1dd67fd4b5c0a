"""Study: the teacher's achieved FLOP/s as a fraction of the machine's matmul peak."""
