from cctvsr.cli import main

main()
