{#- Generic data tests of the monitoring marts (dbt core has no multi-column key or range test). -#}

{% test monitoring_unique_grain(model, columns) %}
    {#- Fail on every combination of `columns` that occurs more than once. -#}
    select
        {{ columns | join(', ') }},
        count(*) as occurrences
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}


{% test monitoring_in_range(model, column_name, min_value=none, max_value=none) %}
    {#- Fail on every non-NULL value below `min_value` or above `max_value` (inclusive bounds). -#}
    select {{ column_name }}
    from {{ model }}
    where
        {{ column_name }} is not null
        and (
            1 = 0
            {%- if min_value is not none %}
            or {{ column_name }} < {{ min_value }}
            {%- endif %}
            {%- if max_value is not none %}
            or {{ column_name }} > {{ max_value }}
            {%- endif %}
        )
{% endtest %}
