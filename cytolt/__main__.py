from cytolt.cli import main

main()
