"""Tables: specs (which runs), the paper's numbers, and the Markdown/LaTeX renderer."""
