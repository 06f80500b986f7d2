from archkit.cli import main

raise SystemExit(main())
