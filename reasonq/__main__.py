from reasonq.cli import main

raise SystemExit(main())
