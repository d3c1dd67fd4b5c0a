"""Study: the BERT-cat teacher's precision options side by side, effectiveness and speed."""
