from loadtest.peers import main

raise SystemExit(main())
