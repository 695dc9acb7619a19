#!/usr/bin/env python
"The medseg-tutor CLI from a checkout without installing it (for the device machine and for torchrun)."
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from medseg_tutor.cli import main

if __name__ == '__main__': sys.exit(main())
