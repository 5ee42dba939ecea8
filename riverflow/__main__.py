from riverflow.cli import main

raise SystemExit(main())
