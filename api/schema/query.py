import strawberry


@strawberry.type(description="Entry points for partner software.")
class Query:
    @strawberry.field(description="Always true: lets a client check that its key works.")
    def ping(self) -> bool:
        return True
