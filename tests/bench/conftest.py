import sys
from pathlib import Path

# The stand-in third-party plugin module lives next to the tests.
sys.path.insert(0, str(Path(__file__).parent))
