from pbtrun.cli import main

main()
