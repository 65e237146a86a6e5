import sys

from hymoerec.cli import main

sys.exit(main())
