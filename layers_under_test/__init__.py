"""Reference layers, deliberately broken twins, and the registry that tells gradverify how to build and feed them."""  # noqa: E501, RUF100
