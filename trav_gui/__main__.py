from trav_gui.cli import main

raise SystemExit(main())
