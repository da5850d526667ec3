from comparer.cli import main

raise SystemExit(main())
