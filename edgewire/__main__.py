from edgewire.cli import main

main()
