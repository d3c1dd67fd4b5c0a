"""Study: our served teacher against the tools a team would pick instead, on the same weights."""
