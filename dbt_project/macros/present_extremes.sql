{#
    Minimum and maximum of the non-null values among a few columns, null when all are null.
    least() and greatest() return null on any null argument in Snowflake, Spark and Trino but skip
    nulls in DuckDB and Postgres. Rotating coalesce() makes every argument non-null as soon as one
    value is present, and each present value is still one of the arguments, so every engine
    gives the same result.
#}
{% macro least_present(columns) %}
    {{ _rotated_coalesce('least', columns) }}
{% endmacro %}

{% macro greatest_present(columns) %}
    {{ _rotated_coalesce('greatest', columns) }}
{% endmacro %}

{% macro _rotated_coalesce(function, columns) %}
    {{ function }}(
        {%- for i in range(columns | length) %}
            coalesce({{ (columns[i:] + columns[:i]) | join(', ') }}){{ ',' if not loop.last }}
        {%- endfor %}
    )
{% endmacro %}
