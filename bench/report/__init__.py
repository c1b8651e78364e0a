"""Reading finished runs: the numbers (``summary``), the paired tests (``paired``), the words
(``prose``), the list of figures and the stored data each is drawn from (``figures``, drawn by
``plots``), the tables as LaTeX (``latex``), the val photos behind the sample grid
(``photos``), ``bench compare``'s lines (``compare``) and report.md (``build``). Never imports
train/ or run/."""
