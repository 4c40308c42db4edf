{% macro monitoring_quantile_cut_points(values_name, group_column, bins=none) %}
    {#-
        Select the distinct cut points of each group: the quantiles at 1/bins .. (bins-1)/bins
        of the values in `values_name` (columns `group_column`, `value_num` not NULL,
        `row_count`). A quantile is the smallest value whose cumulative row count reaches
        level * total / bins, the inverted empirical distribution function (numpy's
        `inverted_cdf` method). Tied quantiles collapse into one cut point, so a group with
        few distinct values gets fewer bins.
    -#}
    {%- set bins = bins or monitoring_psi_bins() -%}
    select distinct
        {{ group_column }},
        cut_point
    from (
        select
            cumulative.{{ group_column }},
            levels.quantile_level,
            min(cumulative.value_num) as cut_point
        from (
            select
                {{ group_column }},
                value_num,
                sum(row_count) over (
                    partition by {{ group_column }}
                    order by value_num
                    rows between unbounded preceding and current row
                ) as cumulative_rows,
                sum(row_count) over (partition by {{ group_column }}) as total_rows
            from (
                select
                    {{ group_column }},
                    value_num,
                    sum(row_count) as row_count
                from {{ values_name }}
                group by {{ group_column }}, value_num
            ) as distinct_values
        ) as cumulative
        cross join (
            {%- for level in range(1, bins) %}
            select {{ level }} as quantile_level
            {% if not loop.last %}union all{% endif %}
            {%- endfor %}
        ) as levels
        {#- integer arithmetic, so a cut point never moves by a rounding error #}
        where cumulative.cumulative_rows * {{ bins }} >= levels.quantile_level * cumulative.total_rows
        group by cumulative.{{ group_column }}, levels.quantile_level
    ) as quantiles
{% endmacro %}


{% macro monitoring_bins_from_cut_points(cut_points_name, groups_name, group_column) %}
    {#-
        Select one row per (`group_column`, bin_number) with `lower_edge` (exclusive) and
        `upper_edge` (inclusive); NULL means no limit. Cut points c1 < .. < ck give the bins
        (-inf, c1], (c1, c2], .., (ck, +inf). A group of `groups_name` without cut points gets
        the single bin (-inf, +inf).
    -#}
    select
        {{ group_column }},
        row_number() over (partition by {{ group_column }} order by cut_point) as bin_number,
        lag(cut_point) over (partition by {{ group_column }} order by cut_point) as lower_edge,
        cut_point as upper_edge
    from {{ cut_points_name }}

    union all

    select
        groups.{{ group_column }},
        coalesce(edges.edge_count, 0) + 1 as bin_number,
        edges.highest_edge as lower_edge,
        cast(null as {{ type_double() }}) as upper_edge
    from {{ groups_name }} as groups
    left join (
        select
            {{ group_column }},
            count(*) as edge_count,
            max(cut_point) as highest_edge
        from {{ cut_points_name }}
        group by {{ group_column }}
    ) as edges
        on groups.{{ group_column }} = edges.{{ group_column }}
{% endmacro %}


{% macro monitoring_value_in_bin(value, bin) %}
    {#- True when `value` falls in the bin aliased `bin` (lower edge exclusive, upper inclusive). -#}
    ({{ bin }}.lower_edge is null or {{ value }} > {{ bin }}.lower_edge)
    and ({{ bin }}.upper_edge is null or {{ value }} <= {{ bin }}.upper_edge)
{% endmacro %}


{% macro monitoring_psi_term(actual_share, expected_share, epsilon=none) %}
    {#-
        One bin's term of the population stability index, (a - e) * ln(a / e), where a and e
        are the month's and the reference's shares of the bin. A share of 0 is replaced by
        epsilon (default 0.0001) so a bin that is empty on one side adds a large but finite term.
    -#}
    {%- set epsilon = epsilon or monitoring_psi_epsilon() -%}
    {%- set actual -%}
        case when {{ actual_share }} > {{ epsilon }} then {{ actual_share }} else {{ epsilon }} end
    {%- endset -%}
    {%- set expected -%}
        case when {{ expected_share }} > {{ epsilon }} then {{ expected_share }} else {{ epsilon }} end
    {%- endset -%}
    (({{ actual }}) - ({{ expected }})) * ln(({{ actual }}) / ({{ expected }}))
{% endmacro %}
