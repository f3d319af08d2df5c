"""The docs site (``make docs``): reference pages generated from the code, and the link check."""
