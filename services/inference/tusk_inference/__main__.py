from tusk_inference.app import main

main()
