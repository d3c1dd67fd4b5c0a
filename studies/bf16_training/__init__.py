"""Study: bf16 against fp32 training on one CPU, the same run in both precisions."""
