"""`python -m spendgate.ops`: where the operations pack's files are, one a line."""

from spendgate.ops import FILES, path

for name in FILES:
    print(path(name))
