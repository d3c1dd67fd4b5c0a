"""Study: what a store codec costs in nDCG@10 and latency against fp16."""
