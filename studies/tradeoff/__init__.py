"""Study: the efficiency-effectiveness trade-off, every student against the BERT-cat teacher."""
