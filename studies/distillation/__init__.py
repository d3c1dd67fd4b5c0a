"""Study: the distillation results of benchmarks/reproduce.sh as tables laid out like the paper's."""
