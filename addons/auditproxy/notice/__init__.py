"""The daily notice: which page carries it, putting it in safely, its state and its link."""
